"""AWS and IMSHOP behind the ports: each adapter translates its library's errors at the boundary."""
