"""The loop: the one place that combines the ledger, the model, Label Studio and the reports (select, push, sync,
retrain, report, ingest, simulate, demo). Commands call one function here each."""
