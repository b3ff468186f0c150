"""Task families (gymnasium envs with ``set_task``) and their registry."""
