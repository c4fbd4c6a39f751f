"""Golden sets: labelled good and bad captures attached to a program revision, and test runs
that inspect them with that revision (through the inspection workers) before it is used."""
