"""How forecasts are scored, wherever they are: pysteps' accumulators of each method on the
cells it is scored on (``scores``), and the paired bootstrap over windows that promotion trusts
(``bootstrap``). Training's validation, the promotion and the verification of issued forecasts
all score through here."""
