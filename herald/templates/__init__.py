"""Templates shipped with Herald (mail bodies under ``mail/``)."""
