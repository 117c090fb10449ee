"""English templates for automatic abuse-contact recipients (package for setuptools package-data)."""
