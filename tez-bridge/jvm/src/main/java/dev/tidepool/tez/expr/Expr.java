package dev.tidepool.tez.expr;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.NullNode;

/**
 * A compiled expression of the enrich language.
 *
 * <p>Values are JSON values. Literals: numbers ({@code 1}, {@code 2.5}, {@code 1e3}), strings in
 * single quotes ({@code 'it\'s'}), {@code true}, {@code false}, {@code null}. A bare name or dotted
 * path ({@code amount}, {@code address.city}, {@code tags.0}) reads the record's value; anything
 * missing is null. Operators: {@code + - * / %}, comparisons, {@code && || !}, parentheses.
 * Functions: len, lower, upper, coalesce, abs, round, min, max, if. Evaluation never fails: type
 * mismatches, null operands and division by zero give null.
 */
public final class Expr {
  private final String source;
  private final Node root;

  private Expr(String source, Node root) {
    this.source = source;
    this.root = root;
  }

  public static Expr compile(String source) throws ExprParseException {
    return new Expr(source, Parser.parse(source));
  }

  public JsonNode eval(JsonNode record) {
    return root.eval(record == null ? NullNode.instance : record);
  }

  /**
   * Whether a record passes this expression as a filter: its result is truthy (JavaScript rules:
   * null, false, 0, NaN and '' are false). A missing field or a type mismatch gives null, so the
   * record is dropped.
   */
  public boolean test(JsonNode record) {
    return Values.truthy(eval(record));
  }

  public String source() {
    return source;
  }

  @Override
  public String toString() {
    return source;
  }
}
