"""The walk: one decoder layer at a time through the model (streamed from memory or the
checkpoint), its inputs captured and their statistics collected, a restarted walk resumed."""
