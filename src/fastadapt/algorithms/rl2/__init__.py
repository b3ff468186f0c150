"""RL²: a recurrent policy trained with PPO over trials (:mod:`.algorithm`)."""
