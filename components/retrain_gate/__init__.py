"""RetrainGate: after ExampleGen, decide whether this run trains at all (nothing new, nothing trained)."""
