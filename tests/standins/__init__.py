"""Local stand-ins of the marketplace vendor APIs: small HTTP servers started per test on a free port.

Each records every request, answers like the vendor's documented responses, keeps the state a vendor
would (an operation PATCHed once, an entitlement approved once), and fails on request: ``fail(route, n)``
answers HTTP 503 to the next ``n`` requests of a route, ``hang(route, n)`` holds them past the client's
timeout. ``acks`` lists the calls that took effect at the vendor (what "the vendor saw" means in tests).
"""
