package dev.tidepool.tez.expr;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.LongNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.TextNode;
import dev.tidepool.tez.json.Json;

import java.util.Iterator;
import java.util.Locale;
import java.util.Map;

/**
 * Value semantics of the expression language. Evaluation never throws: an operation on values of
 * the wrong type, or on null, yields null.
 */
final class Values {
  static final JsonNode NULL = NullNode.instance;

  private Values() {
  }

  static JsonNode bool(boolean b) {
    return BooleanNode.valueOf(b);
  }

  /** JavaScript-like truthiness: null, false, 0, NaN and '' are false; everything else is true. */
  static boolean truthy(JsonNode v) {
    if (v == null || v.isNull() || v.isMissingNode()) {
      return false;
    }
    if (v.isBoolean()) {
      return v.booleanValue();
    }
    if (v.isNumber()) {
      if (v.isIntegralNumber()) {
        return v.isBigInteger() ? v.bigIntegerValue().signum() != 0 : v.longValue() != 0;
      }
      double d = v.doubleValue();
      return d != 0 && !Double.isNaN(d);
    }
    if (v.isTextual()) {
      return !v.textValue().isEmpty();
    }
    return true;
  }

  /** True for numbers that fit in a long exactly. */
  private static boolean isLong(JsonNode v) {
    return v.isIntegralNumber() && v.canConvertToLong();
  }

  static JsonNode add(JsonNode a, JsonNode b) {
    if (a.isNull() || b.isNull()) {
      return NULL;
    }
    if (a.isNumber() && b.isNumber()) {
      if (isLong(a) && isLong(b)) {
        try {
          return LongNode.valueOf(Math.addExact(a.longValue(), b.longValue()));
        } catch (ArithmeticException overflow) {
          // falls through to floating point
        }
      }
      return Json.number(a.doubleValue() + b.doubleValue());
    }
    if (a.isTextual() || b.isTextual()) {
      String sa = concatText(a);
      String sb = concatText(b);
      return sa == null || sb == null ? NULL : TextNode.valueOf(sa + sb);
    }
    return NULL;
  }

  private static String concatText(JsonNode v) {
    if (v.isTextual()) {
      return v.textValue();
    }
    if (v.isNumber() || v.isBoolean()) {
      return Json.write(Json.normalize(v));
    }
    return null;
  }

  static JsonNode arith(String op, JsonNode a, JsonNode b) {
    if (op.equals("+")) {
      return add(a, b);
    }
    if (!a.isNumber() || !b.isNumber()) {
      return NULL;
    }
    if (isLong(a) && isLong(b)) {
      long x = a.longValue();
      long y = b.longValue();
      try {
        switch (op) {
          case "-":
            return LongNode.valueOf(Math.subtractExact(x, y));
          case "*":
            return LongNode.valueOf(Math.multiplyExact(x, y));
          case "/":
            if (y == 0) {
              return NULL;
            }
            if (x % y == 0 && !(x == Long.MIN_VALUE && y == -1)) {
              return LongNode.valueOf(x / y);
            }
            break;
          case "%":
            return y == 0 ? NULL : LongNode.valueOf(x % y);
          default:
            throw new IllegalArgumentException(op);
        }
      } catch (ArithmeticException overflow) {
        // falls through to floating point
      }
    }
    double x = a.doubleValue();
    double y = b.doubleValue();
    switch (op) {
      case "-":
        return Json.number(x - y);
      case "*":
        return Json.number(x * y);
      case "/":
        return y == 0 ? NULL : Json.number(x / y);
      case "%":
        return y == 0 ? NULL : Json.number(x % y);
      default:
        throw new IllegalArgumentException(op);
    }
  }

  static JsonNode negate(JsonNode v) {
    if (!v.isNumber()) {
      return NULL;
    }
    if (isLong(v) && v.longValue() != Long.MIN_VALUE) {
      return LongNode.valueOf(-v.longValue());
    }
    return Json.number(-v.doubleValue());
  }

  /** Structural equality; numbers compare by value (1 == 1.0). null == null is true. */
  static boolean equal(JsonNode a, JsonNode b) {
    if (a.isNull() || b.isNull()) {
      return a.isNull() && b.isNull();
    }
    if (a.isNumber() && b.isNumber()) {
      return compareNumbers(a, b) == 0;
    }
    if (a.isArray() && b.isArray()) {
      if (a.size() != b.size()) {
        return false;
      }
      for (int i = 0; i < a.size(); i++) {
        if (!equal(a.get(i), b.get(i))) {
          return false;
        }
      }
      return true;
    }
    if (a.isObject() && b.isObject()) {
      if (a.size() != b.size()) {
        return false;
      }
      Iterator<Map.Entry<String, JsonNode>> it = a.fields();
      while (it.hasNext()) {
        Map.Entry<String, JsonNode> e = it.next();
        JsonNode other = b.get(e.getKey());
        if (other == null || !equal(e.getValue(), other)) {
          return false;
        }
      }
      return true;
    }
    if (a.getNodeType() != b.getNodeType()) {
      return false;
    }
    return a.equals(b);
  }

  /**
   * Ordering of two numbers or two strings; {@code null} (Java) when the values are not
   * comparable (including when either is JSON null).
   */
  static Integer order(JsonNode a, JsonNode b) {
    if (a.isNumber() && b.isNumber()) {
      return compareNumbers(a, b);
    }
    if (a.isTextual() && b.isTextual()) {
      return Integer.signum(a.textValue().compareTo(b.textValue()));
    }
    if (a.isBoolean() && b.isBoolean()) {
      return Boolean.compare(a.booleanValue(), b.booleanValue());
    }
    return null;
  }

  private static int compareNumbers(JsonNode a, JsonNode b) {
    if (isLong(a) && isLong(b)) {
      return Long.compare(a.longValue(), b.longValue());
    }
    java.math.BigDecimal x = Json.decimal(a);
    java.math.BigDecimal y = Json.decimal(b);
    if (x != null && y != null) {
      return x.compareTo(y);
    }
    return Double.compare(a.doubleValue(), b.doubleValue());
  }

  static JsonNode compare(String op, JsonNode a, JsonNode b) {
    switch (op) {
      case "==":
        return bool(equal(a, b));
      case "!=":
        return bool(!equal(a, b));
      default:
        break;
    }
    Integer c = order(a, b);
    if (c == null) {
      return NULL;
    }
    switch (op) {
      case "<":
        return bool(c < 0);
      case "<=":
        return bool(c <= 0);
      case ">":
        return bool(c > 0);
      case ">=":
        return bool(c >= 0);
      default:
        throw new IllegalArgumentException(op);
    }
  }

  static JsonNode len(JsonNode v) {
    if (v.isTextual()) {
      return LongNode.valueOf(v.textValue().length());
    }
    if (v.isArray()) {
      return LongNode.valueOf(v.size());
    }
    return NULL;
  }

  static JsonNode lower(JsonNode v) {
    return v.isTextual() ? TextNode.valueOf(v.textValue().toLowerCase(Locale.ROOT)) : NULL;
  }

  static JsonNode upper(JsonNode v) {
    return v.isTextual() ? TextNode.valueOf(v.textValue().toUpperCase(Locale.ROOT)) : NULL;
  }

  static JsonNode abs(JsonNode v) {
    if (!v.isNumber()) {
      return NULL;
    }
    if (isLong(v) && v.longValue() != Long.MIN_VALUE) {
      return LongNode.valueOf(Math.abs(v.longValue()));
    }
    return Json.number(Math.abs(v.doubleValue()));
  }

  /** Rounds half up (towards positive infinity), like JavaScript's Math.round. */
  static JsonNode round(JsonNode v) {
    if (!v.isNumber()) {
      return NULL;
    }
    if (isLong(v)) {
      return LongNode.valueOf(v.longValue());
    }
    double d = v.doubleValue();
    if (Double.isNaN(d) || Math.abs(d) >= 4503599627370496.0) {
      return Json.number(d); // already integral (or not a number)
    }
    return LongNode.valueOf(Math.round(d));
  }

  /** The smaller (or larger) of two numbers or two strings; null otherwise. */
  static JsonNode extreme(JsonNode a, JsonNode b, boolean wantMax) {
    Integer c = order(a, b);
    if (c == null || a.isBoolean()) {
      return NULL;
    }
    JsonNode pick = wantMax ? (c >= 0 ? a : b) : (c <= 0 ? a : b);
    return pick.isNumber() ? Json.normalize(pick) : pick;
  }
}
