"""What the commands run, as functions to call from Python too: scoring runs with manifests
(``score``), the leaderboard, continual unlearning, the demo and the doctor."""
