"""Built-in mail body templates (Jinja2): ``<lang>/[<recipient kind>/]<report|digest>.txt.j2``."""
