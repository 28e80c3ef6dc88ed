"""The nearmiss consolidation server (Flask)."""
