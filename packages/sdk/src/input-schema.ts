/**
 * The Standard Schema interface (https://standardschema.dev, v1), which zod
 * (3.24+), valibot, arktype and others implement: `requestInput` checks an
 * answer with any of them, and the SDK depends on none. Written out here as
 * the spec recommends (types only, nothing at run time).
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (
      value: unknown,
    ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardSchemaIssue> };

export interface StandardSchemaIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The output type of a Standard Schema. */
export type InferOutput<S extends StandardSchemaV1> = NonNullable<S['~standard']['types']>['output'];

/**
 * An answer to `requestInput` that its `schema` refused. `issues` are the
 * schema's, `answer` is what was sent. Before rejecting, the SDK posts an
 * `input_rejected` event (`{ issues }`) to the job, so the submitter can see
 * why; the job stays live: catch the error to ask again, or let it propagate:
 * the default `retryOn` does not retry it (a retried attempt reads the job's
 * events from the start and would meet the same answer), so the job fails with
 * its message.
 *
 * @example
 * try {
 *   const { approved } = await requestInput('Approve?', { schema: z.object({ approved: z.boolean() }) });
 * } catch (err) {
 *   if (err instanceof InputValidationError) console.log(err.issues);
 * }
 */
export class InputValidationError extends Error {
  override readonly name = 'InputValidationError';
  constructor(
    readonly jobId: string,
    readonly issues: ReadonlyArray<{ message: string; path: string }>,
    readonly answer: unknown,
  ) {
    super(
      `job ${jobId}: the input does not match its schema: ${issues
        .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
        .join('; ')}`,
    );
  }
}

/** The event type posted when an answer is refused by the schema. */
export const inputRejectedEventType = 'input_rejected';

/** Checks `value` with `schema`; the parsed value, or the issues with dotted paths. */
export async function validateInput<T>(
  schema: StandardSchemaV1<unknown, T>,
  value: unknown,
): Promise<{ ok: true; value: T } | { ok: false; issues: { message: string; path: string }[] }> {
  const result = await schema['~standard'].validate(value);
  if (!result.issues) return { ok: true, value: result.value };
  return {
    ok: false,
    issues: result.issues.map((i) => ({
      message: i.message,
      path: (i.path ?? [])
        .map((p) => String(typeof p === 'object' && p !== null && 'key' in p ? p.key : p))
        .join('.'),
    })),
  };
}
