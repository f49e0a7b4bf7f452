package dev.tidepool.tez.json;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.DoubleNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.LongNode;
import com.fasterxml.jackson.databind.node.MissingNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;

import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Iterator;
import java.util.List;

/**
 * JSON helpers shared by the DAG processors.
 *
 * <p>Numbers follow the JavaScript model that IndexedDB values come from: a floating-point value
 * that is integral and within the exactly representable range (|x| &lt;= 2^53) is written as an
 * integer, so {@code 3.0} and {@code 3} are the same value; NaN and infinities become null.
 */
public final class Json {
  /** Largest integer that a double represents exactly (2^53). */
  public static final double MAX_SAFE = 9007199254740992.0;

  public static final ObjectMapper MAPPER = new ObjectMapper()
      .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

  public static final JsonNodeFactory NODES = JsonNodeFactory.instance;

  private Json() {
  }

  /** Parses one JSON document; trailing content after the value is an error. */
  public static JsonNode parse(String text) throws IOException {
    JsonNode node = MAPPER.readTree(text);
    if (node == null || node.isMissingNode()) {
      throw new IOException("empty JSON document");
    }
    return node;
  }

  /** Parses one JSON document from UTF-8 bytes. */
  public static JsonNode parse(byte[] utf8, int offset, int length) throws IOException {
    JsonNode node = MAPPER.readTree(utf8, offset, length);
    if (node == null || node.isMissingNode()) {
      throw new IOException("empty JSON document");
    }
    return node;
  }

  public static String write(JsonNode node) {
    try {
      return MAPPER.writeValueAsString(node);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialize JSON", e);
    }
  }

  /**
   * Follows a dotted path ({@code a.b.c}; numeric segments index arrays) into a value. Anything
   * that is not there is JSON null.
   */
  public static JsonNode path(JsonNode root, String dottedPath) {
    return path(root, splitPath(dottedPath));
  }

  public static JsonNode path(JsonNode root, List<String> segments) {
    JsonNode cur = root;
    for (String seg : segments) {
      if (cur == null) {
        return NullNode.instance;
      }
      if (cur.isObject()) {
        cur = cur.get(seg);
      } else if (cur.isArray() && isIndex(seg)) {
        cur = cur.get(Integer.parseInt(seg));
      } else {
        return NullNode.instance;
      }
    }
    return cur == null || cur instanceof MissingNode ? NullNode.instance : cur;
  }

  public static List<String> splitPath(String dottedPath) {
    List<String> out = new ArrayList<>();
    int start = 0;
    for (int i = 0; i <= dottedPath.length(); i++) {
      if (i == dottedPath.length() || dottedPath.charAt(i) == '.') {
        out.add(dottedPath.substring(start, i));
        start = i + 1;
      }
    }
    return Collections.unmodifiableList(out);
  }

  private static boolean isIndex(String seg) {
    if (seg.isEmpty() || seg.length() > 9) {
      return false;
    }
    for (int i = 0; i < seg.length(); i++) {
      if (seg.charAt(i) < '0' || seg.charAt(i) > '9') {
        return false;
      }
    }
    return true;
  }

  /** A double as a JSON number in the JavaScript model (see the class comment). */
  public static JsonNode number(double d) {
    if (Double.isNaN(d) || Double.isInfinite(d)) {
      return NullNode.instance;
    }
    if (d == Math.rint(d) && Math.abs(d) <= MAX_SAFE) {
      return LongNode.valueOf((long) d);
    }
    return DoubleNode.valueOf(d);
  }

  /** An exact decimal as a JSON number: an integer when it is one and fits a long. */
  public static JsonNode number(BigDecimal d) {
    BigDecimal s = d.stripTrailingZeros();
    if (s.scale() <= 0) {
      try {
        return LongNode.valueOf(s.longValueExact());
      } catch (ArithmeticException tooBig) {
        // falls through to a double
      }
    }
    return number(d.doubleValue());
  }

  /** The exact decimal value of a numeric node, or null if it is not a (finite) number. */
  public static BigDecimal decimal(JsonNode n) {
    if (n == null || !n.isNumber()) {
      return null;
    }
    if (n.isIntegralNumber()) {
      return n.isBigInteger() ? new BigDecimal(n.bigIntegerValue()) : BigDecimal.valueOf(n.longValue());
    }
    if (n.isBigDecimal()) {
      return n.decimalValue();
    }
    double d = n.doubleValue();
    if (Double.isNaN(d) || Double.isInfinite(d)) {
      return null;
    }
    return BigDecimal.valueOf(d);
  }

  /** Rewrites numbers to their normalized form, recursively. */
  public static JsonNode normalize(JsonNode n) {
    if (n == null || n.isMissingNode()) {
      return NullNode.instance;
    }
    if (n.isNumber()) {
      if (n.isIntegralNumber()) {
        if (n.isBigInteger()) {
          BigInteger b = n.bigIntegerValue();
          return b.bitLength() < 64 ? LongNode.valueOf(b.longValue()) : n;
        }
        return LongNode.valueOf(n.longValue());
      }
      return number(n.doubleValue());
    }
    if (n.isArray()) {
      ArrayNode a = NODES.arrayNode(n.size());
      for (JsonNode e : n) {
        a.add(normalize(e));
      }
      return a;
    }
    if (n.isObject()) {
      ObjectNode o = NODES.objectNode();
      Iterator<String> names = n.fieldNames();
      while (names.hasNext()) {
        String k = names.next();
        o.set(k, normalize(n.get(k)));
      }
      return o;
    }
    return n;
  }

  /**
   * Canonical text of a value: numbers normalized, object keys sorted, no whitespace. Two values
   * that are equal in the JavaScript model have the same canonical text.
   */
  public static String canonical(JsonNode n) {
    StringBuilder sb = new StringBuilder();
    writeCanonical(normalize(n), sb);
    return sb.toString();
  }

  private static void writeCanonical(JsonNode n, StringBuilder sb) {
    if (n.isArray()) {
      sb.append('[');
      for (int i = 0; i < n.size(); i++) {
        if (i > 0) {
          sb.append(',');
        }
        writeCanonical(n.get(i), sb);
      }
      sb.append(']');
    } else if (n.isObject()) {
      List<String> keys = new ArrayList<>();
      n.fieldNames().forEachRemaining(keys::add);
      Collections.sort(keys);
      sb.append('{');
      for (int i = 0; i < keys.size(); i++) {
        if (i > 0) {
          sb.append(',');
        }
        sb.append(write(TextNode.valueOf(keys.get(i)))).append(':');
        writeCanonical(n.get(keys.get(i)), sb);
      }
      sb.append('}');
    } else {
      sb.append(write(n));
    }
  }
}
