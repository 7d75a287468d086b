"""Pure opt-out policy: settings, MO text decoding, keyword matching, number keys, decisions.

No sockets, tasks or clock reads here: callers pass bytes, values and `now`.
"""
