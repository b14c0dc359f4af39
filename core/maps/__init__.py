"""The one map (一张图): layers of GeoJSON built for a reader with the scope everything else has, and the offline
base layer of the city's district boundaries (`boundaries/`). `layers.py` is the registry: a layer is one function
(session, user) -> features and one line in `LAYERS`."""
