"""A simulated ESP32 board on a virtual Bluetooth world (needs the ``sim`` extra for the radio parts).

The flash, partition table and ESP-IDF OTA model (:mod:`bridge.sim.flash`, :mod:`bridge.sim.esp_ota`) are pure
Python; :mod:`bridge.sim.world` and :mod:`bridge.sim.board` run on Bumble. ``import bridge`` never imports this
package.
"""
