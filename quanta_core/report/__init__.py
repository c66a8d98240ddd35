"""Pages: the cluster report, its samples table, the model page, and what they are drawn with.

  page           the self-contained HTML cluster report
  samples        the samples a report shows: columns, check, context windows
  table          the complete samples table of a report (Parquet)
  dynamics_page  the model page and the report's training-dynamics extras
  learning_page  the model page's learning-time sections
  token_text     token id → raw bytes (byte-level BPE), shown as text
  html           the one jinja2 environment and the helpers that make a page safe
  charts/        every SVG chart (numbers and fixed labels only)
  templates/     the jinja2 templates and the report's script
"""
