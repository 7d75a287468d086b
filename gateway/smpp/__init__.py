"""Pure SMPP 3.4: framing, field access, sans-IO sessions. Imports nothing but the stdlib and aiosmpplib."""
