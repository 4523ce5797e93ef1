"""Code shared by the services and the gateway."""
