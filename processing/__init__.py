"""Shared processing for nionswift-insitu: pure numpy/scipy/scikit-image (+ numba/OpenCV kernels), no Swift."""
from __future__ import annotations

from processing.base import (Calibration, CircleAnnotation, Context, Frame, ImageOutput, InputError,
                             KymographOutput, LinePlotOutput, Notice, Output, Outputs, Parameter, ParameterError, ProcessingError,
                             Processor, RGBImageOutput, TimeSeriesOutput, crop_fractional, make_frame,
                             processor_from_function, validate_image)
from processing.registry import all_processors, get, register

__all__ = ["Calibration", "CircleAnnotation", "Context", "Frame", "ImageOutput", "InputError", "KymographOutput",
           "LinePlotOutput", "Notice", "Output", "Outputs", "Parameter", "ParameterError", "ProcessingError", "Processor",
           "RGBImageOutput", "TimeSeriesOutput", "crop_fractional", "make_frame", "processor_from_function",
           "validate_image", "all_processors", "get", "register"]
