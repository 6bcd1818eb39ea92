"""Engines: one pure builder per engine (Profile -> Launch), the registry that picks
one, the plan, reasoning-parser spellings, and rendering for display."""
