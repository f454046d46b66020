"""The run and sweep pages (`report.html`), their figures, and the run record they read."""
