package dev.tidepool.tez.agg;

import java.util.Locale;
import java.util.Objects;

/** One requested aggregate: {@code count}, or {@code sum|min|max|avg} of a (dotted) field. */
public final class AggSpec {
  public enum Kind {
    COUNT, SUM, MIN, MAX, AVG
  }

  private final Kind kind;
  private final String field;

  private AggSpec(Kind kind, String field) {
    this.kind = kind;
    this.field = field;
  }

  public static AggSpec count() {
    return new AggSpec(Kind.COUNT, null);
  }

  public static AggSpec of(Kind kind, String field) {
    if (kind == Kind.COUNT) {
      return count();
    }
    return new AggSpec(kind, Objects.requireNonNull(field));
  }

  /** Parses {@code count}, {@code sum:amount}, {@code min:price.net}, ... */
  public static AggSpec parse(String text) {
    String t = text.trim();
    int colon = t.indexOf(':');
    String kindName = colon < 0 ? t : t.substring(0, colon);
    Kind kind;
    try {
      kind = Kind.valueOf(kindName.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("unknown aggregate '" + kindName
          + "' in '" + text + "' (expected count, sum:F, min:F, max:F or avg:F)");
    }
    if (kind == Kind.COUNT) {
      if (colon >= 0) {
        throw new IllegalArgumentException("count takes no field: '" + text + "'");
      }
      return count();
    }
    if (colon < 0 || colon == t.length() - 1) {
      throw new IllegalArgumentException("aggregate '" + text + "' needs a field, e.g. "
          + kindName + ":amount");
    }
    String field = t.substring(colon + 1).trim();
    if (field.isEmpty() || field.startsWith(".") || field.endsWith(".") || field.contains("..")) {
      throw new IllegalArgumentException("bad field name in aggregate '" + text + "'");
    }
    return new AggSpec(kind, field);
  }

  public Kind kind() {
    return kind;
  }

  /** The field, or null for count. */
  public String field() {
    return field;
  }

  /** Name of the result in the output object: {@code count}, {@code sum_amount}, ... */
  public String outputName() {
    return kind == Kind.COUNT ? "count" : kind.name().toLowerCase(Locale.ROOT) + "_" + field;
  }

  /** The textual form accepted by {@link #parse}. */
  @Override
  public String toString() {
    return kind == Kind.COUNT ? "count" : kind.name().toLowerCase(Locale.ROOT) + ":" + field;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof AggSpec && ((AggSpec) o).kind == kind
        && Objects.equals(((AggSpec) o).field, field);
  }

  @Override
  public int hashCode() {
    return Objects.hash(kind, field);
  }
}
