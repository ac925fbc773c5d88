"""Search backends behind :mod:`knnlab.search`, one module each (its registry says which
module serves which ``algorithm``). Importing this package imports none of them."""
