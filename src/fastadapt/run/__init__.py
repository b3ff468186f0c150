"""fastadapt.run."""
