"""CarVision market intelligence: the dashboard and price estimator dealers open
(`streamlit run apps/carvision/app.py`, or `make app`)."""
