"""Sample graphs: the example graph (:mod:`lineagehub.samples.example`) and the demo
(:mod:`lineagehub.samples.demo`)."""
