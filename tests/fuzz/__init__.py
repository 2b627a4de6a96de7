"""Property-based fuzzing of one real broker over its wire protocol.

Every request type gets structurally valid envelopes with random field
values, and every frame kind gets random bytes, truncations, bit flips,
multi-frame messages and produce batches whose CRC is right but whose
payload is garbage. Each case must get an error answer or a valid one
(or none, where the protocol says so), the broker must keep serving a
fresh client, and the data stored before the fuzzing must read back
byte-identical. ``make test`` runs a fast derandomized subset, ``make
fuzz`` 100,000 random cases (tests/hypothesis_profiles.py).
"""
