"""English templates for law-enforcement recipients (package for setuptools package-data)."""
