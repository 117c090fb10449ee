"""Herald: tell network owners, national CERTs and law-enforcement partners about infected or
exposed machines on their networks, in daily per-recipient reports."""

__version__ = "0.1.0"
