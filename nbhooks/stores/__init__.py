"""What training produced, kept in memory or on disk: no TensorFlow, no widgets.

* :mod:`~nbhooks.stores.metrics`: :class:`MetricHistory`, every in-memory evaluation value;
* :mod:`~nbhooks.stores.final_values`: :class:`FinalValuesTable`, final-op values per session;
* :mod:`~nbhooks.stores.pipeline_files`: :class:`PipelineStore`, input-pipeline checkpoint files.

Hooks write to them from the training thread; views and users read them from any thread.
"""
