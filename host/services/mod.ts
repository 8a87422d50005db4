/**
 * Placeholder: filled by its issue.
 *
 * @module
 */
export {};
