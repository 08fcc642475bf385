"""nionswift-insitu: live processors, drift-corrected spectrum imaging and a simulated instrument for Nion Swift.

Thin glue only: processors live in ``processing``, the simulated instrument in ``instrument_sim``.
Set ``INSITU_SIMULATOR=1`` in the environment to start Swift with the simulated instrument ("simulator mode").
"""
from __future__ import annotations

import logging
import os
import threading
import typing

from nion.swift import Application

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import decompose_computation
from nionswift_plugin.insitu import drift_si_panel
from nionswift_plugin.insitu import fusion_computation
from nionswift_plugin.insitu import inspector
from nionswift_plugin.insitu import panels
from nionswift_plugin.insitu import run_on_sequence
from nionswift_plugin.insitu import series_acquisition
from nionswift_plugin.insitu import stack_computations
from nionswift_plugin.insitu import simulator_panel
from nionswift_plugin.insitu.player import panel as player_panel
from nionswift_plugin.insitu.live_engine import ENGINE

_simulator_handle: typing.Any = None


def simulator_requested() -> bool:
    """Simulator mode: the ``INSITU_SIMULATOR`` switch (1/true/yes)."""
    return os.environ.get("INSITU_SIMULATOR", "").strip().lower() in ("1", "true", "yes", "on")


def _warm_up() -> None:
    """Compile/load the numba kernels off the live path, so the first frames don't stall."""
    try:
        from processing import warmup
        warmup.warm_up()
    except Exception as e:  # never fail plug-in loading because of a cache problem
        logging.warning("In-situ: warm-up failed (%s); kernels will compile on first use.", e)


class InSituExtension:
    extension_id = "nionswift.insitu.extension"

    def __init__(self, api_broker: typing.Any) -> None:
        computations.register_all()
        inspector.register()
        panels.register_panels()
        drift_si_panel.register_panels()
        simulator_panel.register_panels()
        player_panel.register_panels()  # Window > In-situ Player
        fusion_computation.register()  # Processing > In-situ > Fuse HAADF + chemical maps, and live fusion
        decompose_computation.register()  # Processing > In-situ > Decompose SI, and live PCA/NMF/VCA
        stack_computations.register()  # Processing > In-situ > Align stack (SDSD)
        series_acquisition.register_panels()  # Window > Focal / energy series
        self.__align_menu_handler = None
        self.__menu_handler = None
        self.__fusion_menu_handler = None
        self.__decompose_menu_handler = None
        self.__sequence_menu_handler = None
        if Application.app is not None:
            self.__menu_handler = Application.app.register_menu_handler(panels.install_menu)
            self.__fusion_menu_handler = Application.app.register_menu_handler(fusion_computation.install_menu)
            self.__decompose_menu_handler = Application.app.register_menu_handler(decompose_computation.install_menu)
            # Processing > In-situ > Run on sequence... (after panels.install_menu, which makes the submenu)
            self.__sequence_menu_handler = Application.app.register_menu_handler(run_on_sequence.install_menu)
            self.__align_menu_handler = Application.app.register_menu_handler(stack_computations.install_menu)
        self.__driver_handler = None
        driver_folder = os.environ.get("INSITU_GUI_DRIVER")
        if driver_folder and Application.app is not None:  # the scripted user of the real-GUI check only
            from nionswift_plugin.insitu import gui_driver
            self.__driver_handler = Application.app.register_menu_handler(gui_driver.GuiDriver(
                driver_folder, [p for p in os.environ.get("INSITU_GUI_PROCESSORS", "").split(",") if p]
                or gui_driver.DEFAULT_PROCESSORS).on_window)
        threading.Thread(target=_warm_up, name="insitu-warmup", daemon=True).start()

    def close(self) -> None:
        if self.__menu_handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__menu_handler)
        if self.__fusion_menu_handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__fusion_menu_handler)
        if self.__decompose_menu_handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__decompose_menu_handler)
        if self.__sequence_menu_handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__sequence_menu_handler)
        if self.__driver_handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__driver_handler)
        if self.__align_menu_handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__align_menu_handler)
        series_acquisition.unregister_panels()
        panels.unregister_panels()
        inspector.unregister()
        drift_si_panel.unregister_panels()
        simulator_panel.unregister_panels()
        player_panel.unregister_panels()
        ENGINE.close()


def run() -> None:
    """Called by Swift after all plug-ins are loaded: register the simulated instrument in simulator mode."""
    global _simulator_handle
    from nionswift_plugin.insitu.player import device as player_device
    player_device.register_player()  # the In-situ Player camera: with or without simulator mode
    if simulator_requested() and _simulator_handle is None:
        from instrument_sim import configuration
        _simulator_handle = configuration.register_simulator(configuration.SimulatorConfiguration())
        logging.info("In-situ: simulator mode, simulated instrument registered.")


def stop() -> None:
    global _simulator_handle
    from nionswift_plugin.insitu.player import device as player_device
    player_device.unregister_player()
    if _simulator_handle is not None:
        from instrument_sim import configuration
        configuration.unregister_simulator(_simulator_handle)
        _simulator_handle = None
