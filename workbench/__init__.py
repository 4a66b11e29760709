"""GPT Store Workbench."""
