/**
 * The version of our own wire extensions. Bumped when an extension is added;
 * the 3.7 wire underneath never changes.
 */
export const apiVersion = 1;
