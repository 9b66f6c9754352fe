"""What users and programs talk to: the ASGI server (:mod:`lineagehub.interfaces.server`)
and the ``lineagehub`` command (:mod:`lineagehub.interfaces.cli`)."""
