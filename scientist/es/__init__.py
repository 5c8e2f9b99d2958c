"""The evolution-strategies baseline: an LPO drift network meta-learned with OpenES.

`lpo` holds the network (pure JAX) and renders it as an ordinary mirror_drift candidate;
`trainer` builds one compiled call that trains a whole ES population of PPO agents;
`campaign` runs generations resumably against the archive; `checkpoint` (de)serialises
ES state without pickle.
"""
