package dev.tidepool.tez;

import com.fasterxml.jackson.databind.JsonNode;
import dev.tidepool.tez.expr.Expr;
import dev.tidepool.tez.expr.ExprParseException;

/**
 * The {@code where} of a DAG: which records its first vertex keeps. An expression of the enrich
 * language evaluated on the record's value; a record is kept when the result is truthy, so a
 * missing field, a null or a type mismatch drops it. No expression keeps every record.
 */
public final class Filter {
  private static final Filter ALL = new Filter(null);

  private final Expr expr;

  private Filter(Expr expr) {
    this.expr = expr;
  }

  /**
   * The filter of a {@code --where} source; null or blank keeps everything.
   *
   * @throws IllegalArgumentException naming the expression and what is wrong with it
   */
  public static Filter parse(String source) {
    if (source == null || source.isBlank()) {
      return ALL;
    }
    try {
      return new Filter(Expr.compile(source));
    } catch (ExprParseException e) {
      throw new IllegalArgumentException("--where: cannot parse expression '" + source + "': "
          + e.getMessage());
    }
  }

  /** Whether the record whose value is {@code value} passes. */
  public boolean keeps(JsonNode value) {
    return expr == null || expr.test(value);
  }

  /** The source text, or null when every record is kept (this is what the payload carries). */
  public String source() {
    return expr == null ? null : expr.source();
  }
}
