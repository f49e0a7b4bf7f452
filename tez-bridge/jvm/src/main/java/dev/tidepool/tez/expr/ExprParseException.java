package dev.tidepool.tez.expr;

/** An expression that does not parse. The message names the position (0-based character). */
public final class ExprParseException extends Exception {
  private static final long serialVersionUID = 1L;

  private final int position;

  public ExprParseException(String message, int position) {
    super(message + " at position " + position);
    this.position = position;
  }

  public int position() {
    return position;
  }
}
