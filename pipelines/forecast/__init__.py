"""Issuing forecasts: the forecast store, the forecasters and the one path that issues them."""

from pipelines.forecast.store import Forecast, ForecastStore, ForecastStoreError, open_forecasts

__all__ = ["Forecast", "ForecastStore", "ForecastStoreError", "open_forecasts"]
