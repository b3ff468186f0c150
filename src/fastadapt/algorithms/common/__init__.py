"""What several algorithms share: returns and GAE, the TRPO step, PPO's loss terms."""
