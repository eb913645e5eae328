"""What each variant and task declares (names, typed hyperparameters, defaults, metrics,
equations), importable without torch: `plan`, `report`, `variants` and `tasks` read these.
The implementations (nn.Modules, data loading) live in `lorabench.variants` and
`lorabench.tasks` and are imported only by commands that train or export."""
