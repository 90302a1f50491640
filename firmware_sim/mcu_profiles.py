"""Microcontroller profiles for the budget check: memory, clock and assumed MAC throughput.

Memory and clock figures are from the vendors' datasheets. The MAC-per-cycle figures are
*assumptions* about sustained throughput of a good kernel library on 1-D convolutions, not
measurements; they are stated here so that a budget result can be argued with:

- Cortex-M0+ (ARMv6-M): a single-cycle 32x32 multiplier but no multiply-accumulate and no
  SIMD; an int8 MAC in a kernel loop is load, load, sign-extend, MUL, ADD (~4 cycles), hence
  **0.25 int8 MAC/cycle**. No FPU: a soft-float multiply and add costs ~50-100 cycles, hence
  **0.01 fp32 MAC/cycle**.
- Cortex-M4F (ARMv7E-M): CMSIS-NN packs int8 pairs into 16-bit lanes and uses ``SMLAD``
  (two 16x16 MACs per cycle); after loads and sign extension Lai et al. (CMSIS-NN, 2018)
  report roughly one MAC per cycle on convolutions, hence **1.0 int8 MAC/cycle**. The
  single-precision FPU's ``VFMA`` with operand loads sustains ~1 per 3 cycles:
  **0.33 fp32 MAC/cycle**.
- Cortex-M7: the same DSP instructions on a dual-issue pipeline with 64-bit loads; CMSIS-NN
  sustains about twice the M4 rate per cycle: **2.0 int8 MAC/cycle**; FPU ~**1.0 fp32
  MAC/cycle** (dual issue of load and FMA).
- ESP32-S3 (Xtensa LX7 with the PIE 128-bit SIMD extension): ESP-NN's vectorised int8
  kernels process 16 lanes per instruction but are limited by loads and requantisation;
  **4.0 int8 MAC/cycle** sustained is assumed. Single-precision FPU ``madd.s``:
  **0.5 fp32 MAC/cycle**.

Every profile reserves half of the RAM and half of the flash for the firmware itself
(radio stack, drivers, buffers) and allows the model at most 50 % of the CPU time, so that
sampling, the radio and sleep still fit. Change them per profile when a design is known.

Examples
--------
>>> from edgebp.firmware_sim.mcu_profiles import mcu_profile, MCU_PROFILES
>>> p = mcu_profile("nrf52832")
>>> p.ram_bytes // 1024, p.flash_bytes // 1024, p.clock_hz / 1e6
(64, 512, 64.0)
>>> mcu_profile("m4f").name
'nrf52832'
>>> sorted(MCU_PROFILES)[:2]
['esp32s3', 'nrf52832']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class McuProfile:
    """One microcontroller: what it has and what share of it the model may use."""

    name: str
    core: str
    example: str
    clock_hz: float
    ram_bytes: int
    flash_bytes: int
    int8_macs_per_cycle: float
    fp32_macs_per_cycle: float
    ram_fraction: float = 0.5
    flash_fraction: float = 0.5
    max_duty_cycle: float = 0.5
    note: str = ""

    @property
    def ram_for_model(self) -> int:
        """Bytes of RAM the model may use (activations + streaming state)."""
        return int(self.ram_bytes * self.ram_fraction)

    @property
    def flash_for_model(self) -> int:
        """Bytes of flash the model may use (weights)."""
        return int(self.flash_bytes * self.flash_fraction)

    def to_dict(self) -> dict:
        """Plain dict, for JSON output."""
        return asdict(self)


MCU_PROFILES: dict[str, McuProfile] = {
    p.name: p
    for p in (
        McuProfile(
            name="samd21", core="Cortex-M0+", example="Microchip ATSAMD21G18A",
            clock_hz=48e6, ram_bytes=32 * KIB, flash_bytes=256 * KIB,
            int8_macs_per_cycle=0.25, fp32_macs_per_cycle=0.01,
            note="no DSP extension, no FPU",
        ),
        McuProfile(
            name="rp2040", core="Cortex-M0+ (x2, one used)", example="Raspberry Pi RP2040",
            clock_hz=133e6, ram_bytes=264 * KIB, flash_bytes=2 * MIB,
            int8_macs_per_cycle=0.25, fp32_macs_per_cycle=0.01,
            note="external QSPI flash (2 MiB on the Pico board); execute-in-place is slower",
        ),
        McuProfile(
            name="nrf52832", core="Cortex-M4F", example="Nordic nRF52832",
            clock_hz=64e6, ram_bytes=64 * KIB, flash_bytes=512 * KIB,
            int8_macs_per_cycle=1.0, fp32_macs_per_cycle=0.33,
            note="BLE SoC; the SoftDevice takes a large share of the reserved flash/RAM",
        ),
        McuProfile(
            name="nrf52840", core="Cortex-M4F", example="Nordic nRF52840",
            clock_hz=64e6, ram_bytes=256 * KIB, flash_bytes=1 * MIB,
            int8_macs_per_cycle=1.0, fp32_macs_per_cycle=0.33,
        ),
        McuProfile(
            name="stm32h743", core="Cortex-M7", example="ST STM32H743",
            clock_hz=480e6, ram_bytes=1 * MIB, flash_bytes=2 * MIB,
            int8_macs_per_cycle=2.0, fp32_macs_per_cycle=1.0,
            note="RAM is split into TCM/AXI/AHB banks; one contiguous arena is at most 512 KiB",
        ),
        McuProfile(
            name="esp32s3", core="Xtensa LX7 (x2, one used)", example="Espressif ESP32-S3 (WROOM-1-N8)",
            clock_hz=240e6, ram_bytes=512 * KIB, flash_bytes=8 * MIB,
            int8_macs_per_cycle=4.0, fp32_macs_per_cycle=0.5,
            note="external flash on the module; PSRAM variants not assumed",
        ),
    )
}

# Generic names a user may type for the class of core.
MCU_ALIASES: dict[str, str] = {
    "m0+": "samd21", "m0plus": "samd21", "cortex-m0+": "samd21",
    "m4f": "nrf52832", "m4": "nrf52832", "cortex-m4f": "nrf52832",
    "m7": "stm32h743", "cortex-m7": "stm32h743", "stm32h7": "stm32h743",
    "esp32-s3": "esp32s3",
}


def mcu_profile(name: str) -> McuProfile:
    """Look up a profile by name or alias (case-insensitive).

    Parameters
    ----------
    name : str
        A key of :data:`MCU_PROFILES` (``"nrf52832"``) or an alias (``"m4f"``).

    Returns
    -------
    McuProfile

    Raises
    ------
    ValueError
        Listing the valid names when ``name`` is unknown.

    Examples
    --------
    >>> mcu_profile("ESP32-S3").int8_macs_per_cycle
    4.0
    """
    key = name.strip().lower()
    key = MCU_ALIASES.get(key, key)
    if key not in MCU_PROFILES:
        raise ValueError(
            f"unknown MCU {name!r}; valid: {', '.join(sorted(MCU_PROFILES))} "
            f"(aliases: {', '.join(sorted(MCU_ALIASES))}) or 'all'"
        )
    return MCU_PROFILES[key]


def mcu_profiles_select(name: str) -> list[McuProfile]:
    """``"all"`` -> every profile; otherwise a comma-separated list of names or aliases.

    Examples
    --------
    >>> [p.name for p in mcu_profiles_select("m0+,m7")]
    ['samd21', 'stm32h743']
    >>> len(mcu_profiles_select("all")) == len(MCU_PROFILES)
    True
    """
    if name.strip().lower() == "all":
        return list(MCU_PROFILES.values())
    return [mcu_profile(n) for n in name.split(",") if n.strip()]
