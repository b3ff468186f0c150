"""fastadapt.meta."""
