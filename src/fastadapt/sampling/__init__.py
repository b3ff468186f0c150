"""fastadapt.sampling."""
