"""What runs leave on disk: run folders and their lock, R's metrics, report, figures, tracking."""
