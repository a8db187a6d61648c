"""modelkit's built-in behaviour, registered through the same hooks third parties use."""
