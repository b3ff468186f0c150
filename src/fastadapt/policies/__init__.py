"""fastadapt.policies."""
