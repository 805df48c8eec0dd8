"""Unit tests of Databricks type handling that need no running emulator."""
import unittest

import harness  # noqa: F401  (puts the emulator's modules on sys.path)
import deltatypes


class DecimalFitTest(unittest.TestCase):
    def test_full_precision_fits(self):
        dtype = deltatypes.parse_type("DECIMAL(38,10)")
        for text in ("-9999999999999999999999999999.9999999999",
                     "9999999999999999999999999999.9999999999",
                     "0.0000000001", "0", "-0.0000000000"):
            deltatypes.check_decimal(dtype, text)  # must not raise

    def test_too_wide_is_refused(self):
        dtype = deltatypes.parse_type("DECIMAL(38,10)")
        for text in ("99999999999999999999999999999",  # 29 integer digits
                     "0.00000000001"):  # 11 fraction digits
            with self.assertRaises(deltatypes.ValueRejected):
                deltatypes.check_decimal(dtype, text)


class RenderingTest(unittest.TestCase):
    def test_early_years_have_four_digits(self):
        ts = deltatypes.parse_type("TIMESTAMP")
        micros = -62135596800000000  # 0001-01-01 00:00:00 UTC
        self.assertEqual(deltatypes.format_timestamp(micros, True), "0001-01-01T00:00:00.000Z")
        self.assertEqual(deltatypes.cast_to_string(ts, micros), "0001-01-01 00:00:00")

    def test_float_is_32_bit(self):
        dtype = deltatypes.parse_type("FLOAT")
        self.assertEqual(deltatypes.store_native(dtype, 3.4028235e38), 3.4028234663852886e38)
        self.assertEqual(deltatypes.store_native(dtype, 0.1), 0.10000000149011612)
        with self.assertRaises(deltatypes.ValueRejected):
            deltatypes.store_native(dtype, 1e39)


if __name__ == "__main__":
    unittest.main()
