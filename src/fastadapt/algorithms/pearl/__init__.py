"""PEARL (Rakelly et al. 2019): off-policy meta-RL by probabilistic task inference."""
