"""One module per loss term; importing this package registers them all."""

from unlearn_methods.losses import ap, dpo, ga, gd, idk, kl, me, npo, rmu, simnpo  # noqa: F401
