"""Vendor API clients of the marketplace channels: lookups that fill what an event leaves out, and the
outbound half of each integration (activate, acknowledge, approve, meter). See ``docs/intake-vendors.md``.
"""
